"""The errors the core raises. The UI turns them into messages; the CLI into exit codes.

Every message says what went wrong and where, in words a user can act on.
"""


class FtappError(Exception):
    """Base class: an expected failure with a message meant for the user."""


class ValidationError(FtappError):
    """The input is wrong (a field, a file, a row). Nothing was changed."""


class NotFound(FtappError):
    """The named thing (dataset, example, version, model) does not exist."""


class Conflict(FtappError):
    """The request clashes with the current state (a name taken, a version frozen)."""


class Forbidden(FtappError):
    """The signed-in user's role does not allow this."""


class Unauthorized(FtappError):
    """The caller did not prove who they are: no API key, a wrong one or a revoked one."""


class ServingError(FtappError):
    """The generation engine can't answer now (starting, crashed, refused the request)."""
