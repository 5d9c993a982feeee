"""One exception type for bad user input, so the CLI and the app can show a one-line message."""


class TinyTLError(ValueError):
    """A setting or input the user can fix; its message is shown as is (CLI exit 2, app st.error)."""


class Terminated(KeyboardInterrupt):
    """SIGTERM (a supervisor, `kill`, a shutdown): stops a command as Ctrl-C does, so a run ends `cancelled`."""
