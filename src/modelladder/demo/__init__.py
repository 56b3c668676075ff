"""The bundled demo (``modelladder demo``): a small agent scenario and its inputs, run on the
bundled fleet so a fresh install shows the ladder at work without any configuration."""

__all__: list[str] = []
