"""python3 -m fs_test ...: what `thinsim fs-test ...` runs."""

import os
import sys

from fs_test.runner import main

if __name__ == "__main__":
    try:
        sys.exit(main())
    except BrokenPipeError:  # output piped into head(1) and the like
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)
