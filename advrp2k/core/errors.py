"""Named errors. The library raises these; only the CLI turns them into messages."""


class Advrp2kError(Exception):
    """Base class: a problem the user can fix. The message says what to do."""


class UsageError(Advrp2kError):
    """Bad option value or combination (the CLI exits with status 2)."""


class PluginError(Advrp2kError):
    """Unknown, duplicate or broken plugin."""


class UnknownPluginError(PluginError, UsageError):
    """A plugin name that no registry knows: a usage error (exit status 2) naming the closest ones."""


class DataError(Advrp2kError):
    """The data folder is missing, malformed or not RP2K."""


class CheckpointError(Advrp2kError):
    """A checkpoint cannot be trusted, read, or does not match the data."""


class AttackContractError(Advrp2kError):
    """An attack returned points outside the box or the eps-ball."""


class IntegrityError(Advrp2kError):
    """A FAIL-level evaluation integrity check failed: no entry is written."""


class EntryValidationError(Advrp2kError):
    """A leaderboard entry breaks the schema or a cross-field rule."""


class OutputError(Advrp2kError):
    """An output location cannot be written: missing and uncreatable, read-only, no space left,
    permission denied, or not a folder (the CLI exits with status 74, EX_IOERR of sysexits.h)."""


class TrainingInterrupted(Advrp2kError):
    """Raised after a stop signal, once the safe-point checkpoint is on disk."""
