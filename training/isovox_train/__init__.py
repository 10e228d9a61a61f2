"""Reproducible training of isovox's shipped models (command ``isovox-train CONFIG``)."""
