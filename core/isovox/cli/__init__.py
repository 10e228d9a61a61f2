"""The ``isovox`` command line."""
