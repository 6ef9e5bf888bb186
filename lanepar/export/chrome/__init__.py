"""Perfetto / Chrome trace JSON, both directions: :mod:`._write` and :mod:`._read`."""

from ._read import ChromeReader as ChromeReader
from ._write import BODY_KINDS as BODY_KINDS
from ._write import FORMAT as FORMAT
from ._write import MACHINE_PID as MACHINE_PID
from ._write import VERSION as VERSION
from ._write import to_chrome_trace as to_chrome_trace
from ._write import write_perfetto as write_perfetto
