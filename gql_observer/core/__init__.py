"""The core every layer stands on: settings (``conf``), database units of work
(``db``), credentials (``auth``) and client-facing errors (``errors``)."""
