"""Plain-Python processing library of the IsoVox Slicer module.

Nothing here imports ``qt``, ``ctk`` or ``slicer.ScriptedLoadableModule`` at module
level, so the logic runs on real MRML nodes from PyPI's ``slicer-core`` in tests
as well as inside 3D Slicer. The engine (:mod:`isovox`) does all the maths; this
package only moves volumes, tables and plots between MRML and the engine.
"""
