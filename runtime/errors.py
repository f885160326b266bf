"""The user's mistakes: one line, exit status 2, no traceback (``reasoning_rl.cli.run`` prints them)."""

from __future__ import annotations

from contextlib import contextmanager


class UserError(ValueError):
    """A problem with what the user asked for: shown as one line, exit status 2, no traceback."""


@contextmanager
def as_user_error(*kinds: type[BaseException]):
    """Turn the given errors (default: ValueError, FileNotFoundError) raised inside into a ``UserError``.

    For library calls that check the user's input (task names, reward names, data files) and
    raise plain errors, because ``rewards`` and ``data_prep`` import nothing from here.
    """
    try:
        yield
    except kinds or (ValueError, FileNotFoundError) as error:
        raise UserError(str(error).strip("'\"")) from None
