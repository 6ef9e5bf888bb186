"""lanepar.tools: what a call is (``ToolCall``, ``@tool``) and the built-in tools.

The built-in tools register themselves with ``@tool`` when imported; importing them here, the
package's entry, means any use of the registry finds them, without the registry importing the
modules that import it.
"""

from . import builtins as builtins  # registers read, grep, glob, ls, hash, parse, bash, write
from . import loopback as loopback  # registers fetch
