import sys

from .allocator import relaunch_with_allocator
from .errors import CavError

try:
    relaunch_with_allocator()  # before torch is imported: the allocator is chosen as the process starts
except CavError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)

from .cli import main  # noqa: E402

sys.exit(main())
