# bash completion for thinsim(1): commands, options, strategy names, and
# volume names from `thinsim ls --json` on the socket the command line names
# (--socket, --pool, else $THINSIM_SOCKET). On any failure (no socket, no
# server, no python3) it completes nothing rather than guess. It needs
# nothing from the bash-completion package.

# Volume names of the running pool, one a line. Arguments: the connection
# options (--socket PATH or --pool DIR, or none).
_thinsim_volumes()
{
    # The reply is one JSON line; python3 comes with the harness, and a JSON
    # parser is the only robust way to read it. --timeout: never hang a
    # shell on a stuck server.
    "${COMP_WORDS[0]}" "$@" --timeout 2 --json ls 2>/dev/null |
        python3 -c 'import json, sys
for v in json.load(sys.stdin): print(v["name"])' 2>/dev/null
}

# Job ids of the running server (`thinsim jobs --json`), as _thinsim_volumes.
_thinsim_jobs()
{
    "${COMP_WORDS[0]}" "$@" --timeout 2 --json jobs 2>/dev/null |
        python3 -c 'import json, sys
for j in json.load(sys.stdin): print(j["id"])' 2>/dev/null
}

_thinsim()
{
    # bash splits words at ':' and '=' (COMP_WORDBREAKS): `reserve=full` is
    # three words, `a:a1` too. Rebuild whole arguments to count them, and
    # complete only the part after the last break, as readline expects.
    local cur="${COMP_WORDS[COMP_CWORD]}" prev="" raw_prev=""
    ((COMP_CWORD > 0)) && raw_prev="${COMP_WORDS[COMP_CWORD-1]}"
    [[ "$cur" == "=" || "$cur" == ":" ]] && cur=""
    local args=() i w joined=0
    for ((i = 1; i < COMP_CWORD; i++)); do
        w="${COMP_WORDS[i]}"
        if [[ ${#args[@]} -gt 0 && ( "$w" == "=" || "$w" == ":" || $joined == 1 ) ]]; then
            args[-1]+="$w"
            [[ "$w" == "=" || "$w" == ":" ]] && joined=1 || joined=0
        else
            args+=("$w")
            joined=0
        fi
    done
    # The word being completed continues the last argument after '=' or ':'.
    local continuing=0
    if [[ "${COMP_WORDS[COMP_CWORD]}" == "=" || "${COMP_WORDS[COMP_CWORD]}" == ":" || $joined == 1 ]]; then
        continuing=1
    fi
    ((${#args[@]} > 0)) && prev="${args[-1]}"
    ((continuing)) && prev="${args[-2]:-}"

    local commands="status ls events create delete resize set activate deactivate
        provision snapshot grow commit fault power-cut bitmap mirror jobs job fs-test check dump restore repair delta"
    local globals="--socket --pool --json --timeout --help"
    local strategies="none provision volume full"

    # The command, how many arguments it has so far, the connection options.
    local command="" nargs=0 conn=() n=${#args[@]}
    ((continuing)) && n=$((n - 1))
    for ((i = 0; i < n; i++)); do
        case "${args[i]}" in
            --socket|--pool) conn=("${args[i]}" "${args[i+1]:-}"); ((i++)) ;;
            --timeout|--reserve|--layer|--op|--errno|--offset|--length|--probability|--count|--granularity) ((i++)) ;;
            -*) ;;
            *) if [[ -z "$command" ]]; then command="${args[i]}"; else ((nargs++)); fi ;;
        esac
    done

    if ((continuing)); then
        # reserve=STRATEGY and job change's copy-mode=MODE are the KEY=VALUEs;
        # after ':' comes a new name.
        if [[ "$command" == set && "${args[-1]}" == reserve* ]]; then
            COMPREPLY=($(compgen -W "$strategies" -- "$cur"))
        elif [[ "$command" == job && "${args[-1]}" == copy-mode* ]]; then
            COMPREPLY=($(compgen -W "write-blocking" -- "$cur"))
        fi
        return
    fi

    case "$prev" in
        --socket) COMPREPLY=($(compgen -f -- "$cur")); return ;;
        --pool) COMPREPLY=($(compgen -d -- "$cur")); return ;;
        --timeout) return ;;
        --reserve) COMPREPLY=($(compgen -W "$strategies" -- "$cur")); return ;;
        --layer) COMPREPLY=($(compgen -W "data metadata" -- "$cur")); return ;;
        --op) COMPREPLY=($(compgen -W "read write flush discard sync any" -- "$cur")); return ;;
        --errno) COMPREPLY=($(compgen -W "EIO ENOSPC EDQUOT EROFS EOPNOTSUPP EPERM ENOMEM" -- "$cur")); return ;;
        --offset|--length|--probability|--count|--granularity) return ;;
        --sync) COMPREPLY=($(compgen -W "full top none incremental" -- "$cur")); return ;;
        --bitmap-mode) COMPREPLY=($(compgen -W "on-success always never" -- "$cur")); return ;;
        --copy-mode) COMPREPLY=($(compgen -W "background write-blocking" -- "$cur")); return ;;
        --on-source-error|--on-target-error) COMPREPLY=($(compgen -W "report ignore stop enospc" -- "$cur")); return ;;
        --bitmap|--buf-size|--speed|--job-id) return ;;
    esac

    if [[ -z "$command" ]]; then
        COMPREPLY=($(compgen -W "$globals $commands" -- "$cur"))
        return
    fi

    if [[ "$command" == fs-test ]]; then
        case "$prev" in
            --fs) COMPREPLY=($(compgen -W "ext4 xfs btrfs" -- "$cur")); return ;;
            --when-full) COMPREPLY=($(compgen -W "error queue" -- "$cur")); return ;;
            --attach) COMPREPLY=($(compgen -W "auto nbdfuse nbd-client" -- "$cur")); return ;;
            --loop-dio) COMPREPLY=($(compgen -W "on off" -- "$cur")); return ;;
            --io) COMPREPLY=($(compgen -W "direct fsync" -- "$cur")); return ;;
            --show) COMPREPLY=($(compgen -f -- "$cur")); return ;;
            --run-dir) COMPREPLY=($(compgen -d -- "$cur")); return ;;
            --pool-size|--volume-size|--no-space-timeout|--block-size|--rounds|--width) return ;;
        esac
        # As `thinsim fs-test --list` and `--help` print them.
        local scenarios="fill-and-grow tiny-pool-mkfs fill-delete-trim snapshot-overwrite
            provision-then-fill two-tenants power-cut all"
        local fsopts="--fs --pool-size --volume-size --reserve --when-full --no-space-timeout
            --block-size --attach --loop-dio --io --timeout --rounds --all --json --keep
            --run-dir --cleanup --show --width --list --verbose --help"
        COMPREPLY=($(compgen -W "$scenarios $fsopts" -- "$cur"))
        return
    fi

    if [[ "$cur" == -* ]]; then
        local opts="$globals"
        case "$command" in
            create) opts+=" --reserve" ;;
            snapshot) opts+=" --read-only" ;;
            restore) opts+=" --force" ;;
            fault) opts+=" --layer --op --errno --offset --length --probability --count" ;;
            bitmap) opts+=" --granularity --disabled --persistent --offset --length" ;;
            job) opts+=" --force" ;;
            mirror) opts+=" --sync --bitmap --bitmap-mode --copy-mode --granularity --buf-size --speed --job-id
                --on-source-error --on-target-error --target-is-zero --wait" ;;
        esac
        COMPREPLY=($(compgen -W "$opts" -- "$cur"))
        return
    fi

    case "$command" in
        ls|delete|resize|set|activate|deactivate|provision)
            if ((nargs == 0)); then
                COMPREPLY=($(compgen -W "$(_thinsim_volumes "${conn[@]}")" -- "$cur"))
            elif [[ "$command" == set ]] && ((nargs == 1)); then
                COMPREPLY=($(compgen -W "reserve=" -- "$cur"))
                compopt -o nospace 2>/dev/null
            fi ;;
        snapshot)
            # ORIGIN NAME, or ORIGIN:NAME pairs: complete the origins.
            if ((nargs == 0)) || [[ "$prev" == *:* ]]; then
                COMPREPLY=($(compgen -W "$(_thinsim_volumes "${conn[@]}")" -- "$cur"))
            fi ;;
        fault)
            ((nargs == 0)) && COMPREPLY=($(compgen -W "add remove ls" -- "$cur")) ;;
        bitmap)
            # bitmap VERB VOLUME NAME ...: the verbs, then the volumes.
            if ((nargs == 0)); then
                COMPREPLY=($(compgen -W "add remove clear enable disable merge ls extents cut" -- "$cur"))
            elif ((nargs == 1)); then
                COMPREPLY=($(compgen -W "$(_thinsim_volumes "${conn[@]}")" -- "$cur"))
            fi ;;
        job)
            # job VERB ID ...: the verbs, then the ids of the server's jobs.
            if ((nargs == 0)); then
                COMPREPLY=($(compgen -W "pause resume cancel complete finalize dismiss set-speed change" -- "$cur"))
            elif ((nargs == 1)); then
                COMPREPLY=($(compgen -W "$(_thinsim_jobs "${conn[@]}")" -- "$cur"))
            elif ((nargs == 2)) && [[ " ${args[*]} " == *" change "* ]]; then
                COMPREPLY=($(compgen -W "copy-mode=" -- "$cur"))
                compopt -o nospace 2>/dev/null
            fi ;;
        check|dump|repair|delta)
            ((nargs == 0)) && COMPREPLY=($(compgen -d -- "$cur")) ;;
        restore)
            if ((nargs == 0)); then COMPREPLY=($(compgen -d -- "$cur"))
            elif ((nargs == 1)); then COMPREPLY=($(compgen -f -- "$cur")); fi ;;
    esac
    return 0
}
complete -F _thinsim thinsim
