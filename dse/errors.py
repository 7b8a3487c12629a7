"""Typed errors: every user mistake is one of these, and the CLIs turn them into one line and its exit status.

Exit statuses of the command lines (README, "Exit status"): 0 success; 1 a bug (an uncaught exception, with
its traceback); 2 bad input (a `DseError`); 3 compiled but not legal for the chip (`python -m dse.compile`);
4 the network's outputs are not finite (`NonFiniteError`); 130 interrupted (Ctrl-C).
"""

EXIT_OK = 0
EXIT_BUG = 1
EXIT_USAGE = 2
EXIT_NOT_LEGAL = 3
EXIT_NON_FINITE = 4
EXIT_INTERRUPTED = 130  # Ctrl-C: 128 + SIGINT, as a shell reports a command the signal ended


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message ("" for none): a user's code or file failing, named in one line."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""


class DseError(Exception):
    """Base of every error a user can cause; the message is one line naming the problem."""

    exit_status = EXIT_USAGE


class ModelError(DseError):
    """The model file is missing, is not ONNX, is truncated, or is otherwise unreadable or unsafe."""


class UnsupportedOpError(DseError):
    """The network holds an op (or an attribute of an op) the compiler does not support."""

    def __init__(self, op_type: str, node: str, detail: str = "") -> None:
        self.op_type, self.node = op_type, node
        msg = f"unsupported op {op_type} at node {node!r}"
        super().__init__(f"{msg}: {detail}" if detail else msg)


class ConstraintError(DseError):
    """The chip's constraints cannot be met by any strategy."""


class ConfigError(DseError):
    """A configuration value is missing, mistyped or out of range."""


class DataError(DseError):
    """The dataset does not fit the model (shape, range)."""


class ResourceError(DseError):
    """The run cannot fit the machine: its estimated memory exceeds the bound (compile.max_memory_gb)."""


class NonFiniteError(DseError):
    """The original's or the compiled network's outputs hold NaN or Inf: no metric of such a run means anything."""

    exit_status = EXIT_NON_FINITE


class OutputError(DseError):
    """A result cannot be written where it belongs: the folder is read-only, or its disk is full."""
