"""The Run tab: scans, reference, method, spacing/scale, device, pre-flight, preview, run and cancel.

A thin adapter: it turns the chosen layers into engine volumes, calls the headless
functions of :mod:`._core` in a ``thread_worker`` and adds what they return.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from qtpy.QtCore import QObject, Qt, Signal
from qtpy.QtWidgets import (
    QCheckBox, QComboBox, QDoubleSpinBox, QFormLayout, QHBoxLayout, QLabel, QListWidget, QListWidgetItem,
    QPlainTextEdit, QProgressBar, QPushButton, QVBoxLayout, QWidget,
)

from isovox import frontend
from isovox.options import RunOptions

from . import _core
from ._layers import (
    add_layer_data, current_point_and_normal, find_layer, image_layers, notify_error, start_worker,
)

NO_REFERENCE = "(none)"


class _Progress(QObject):
    """Carries progress from the worker thread to the GUI thread (queued signal)."""

    changed = Signal(float, str)


class RunPanel(QWidget):
    """Choose inputs and options, check them, preview a slab, run the whole volume."""

    def __init__(self, viewer: Any, on_result: Optional[Callable[[Any, Any], None]] = None) -> None:
        super().__init__()
        self.viewer = viewer
        self.on_result = on_result  # called with (result layer, RunRequest) after a full run
        self.worker: Any = None
        self._cancel_requested = False
        self._progress = _Progress()
        self._progress.changed.connect(self._show_progress)
        self._make_widgets()
        self._lay_out()
        self._connect()
        self.refresh_layers(suggest=True)

    def _make_widgets(self) -> None:
        self.scan_list = QListWidget()
        self.scan_list.setToolTip("Tick 1-3 thick-slice scans (suggested from their geometry)")
        self.scan_list.setMaximumHeight(90)
        self.reference = QComboBox()
        self.method = QComboBox()
        self.method_help = QLabel()
        self.method_help.setWordWrap(True)
        self.spacing = QDoubleSpinBox()
        self.spacing.setRange(0.0, 20.0)
        self.spacing.setDecimals(2)
        self.spacing.setSingleStep(0.1)
        self.spacing.setSpecialValueText("finest input")
        self.spacing.setSuffix(" mm")
        self.scale = QDoubleSpinBox()
        self.scale.setRange(0.0, 8.0)
        self.scale.setDecimals(2)
        self.scale.setSingleStep(0.25)
        self.scale.setSpecialValueText("off (use spacing)")
        self.scale.setPrefix("x")
        self._make_options()
        self._make_actions()

    def _make_options(self) -> None:
        self.register = QCheckBox("Register scans 2-3 to scan 1 (rigid)")
        self.match = QCheckBox("Match scans 2-3 intensities to scan 1")
        self.ensemble = QCheckBox("Average over the 8 flips (learned methods; 8x slower)")
        self.adapt = QCheckBox("Adapt the network to these scans first (learned methods; about 5 min)")
        self.adapt.setToolTip("Fine-tunes a copy of the network on the scans' own in-plane detail; "
                              "kept only if it beats the shipped network on a held-out slab. Previews skip it.")
        self.profile = QComboBox()
        self.profile.addItems(["box", "gaussian"])
        self.profile.setToolTip("Slice profile of the forward model: box of the slice thickness (2-D "
                                "acquisitions) or Gaussian (FWHM = thickness)")
        self.smoothness = QDoubleSpinBox()
        self.smoothness.setRange(0.0, 10.0)
        self.smoothness.setDecimals(4)
        self.smoothness.setSingleStep(0.001)
        self.smoothness.setSpecialValueText("auto (from left-out slices)")
        self.consistency = QCheckBox("Data consistency: the result honours every acquired slice")
        self.consistency.setChecked(True)
        self.consistency.setToolTip("Learned methods end with a solve through the forward model; "
                                    "untick to see the raw network output")
        self.device = QComboBox()
        self.device.addItems(list(frontend.DEVICES))

    def _make_actions(self) -> None:
        self.slab = QDoubleSpinBox()
        self.slab.setRange(1.0, 30.0)
        self.slab.setValue(4.0)
        self.slab.setSuffix(" mm")
        self.report = QPlainTextEdit()
        self.report.setReadOnly(True)
        self.report.setMaximumHeight(150)
        self.warnings = QLabel()
        self.warnings.setWordWrap(True)
        self.warnings.setStyleSheet("color: #f0a030")
        self.check_button = QPushButton("Pre-flight check")
        self.preview_button = QPushButton("Preview slab")
        self.run_button = QPushButton("Run")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.status = QLabel("")
        self.status.setWordWrap(True)

    def _lay_out(self) -> None:
        form = QFormLayout()
        form.addRow("Scans", self.scan_list)
        form.addRow("HR reference", self.reference)
        form.addRow("Method", self.method)
        form.addRow("", self.method_help)
        form.addRow("Target spacing", self.spacing)
        form.addRow("or scale", self.scale)
        form.addRow("Device", self.device)
        form.addRow("", self.register)
        form.addRow("", self.match)
        form.addRow("", self.ensemble)
        form.addRow("", self.adapt)
        form.addRow("Slice profile", self.profile)
        form.addRow("Smoothness", self.smoothness)
        form.addRow("", self.consistency)
        form.addRow("Preview half-width", self.slab)
        buttons = QHBoxLayout()
        for button in (self.check_button, self.preview_button, self.run_button, self.cancel_button):
            buttons.addWidget(button)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(QLabel("Pre-flight"))
        layout.addWidget(self.report)
        layout.addWidget(self.warnings)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addStretch(1)

    def _connect(self) -> None:
        self.check_button.clicked.connect(self.run_preflight)
        self.preview_button.clicked.connect(self.preview)
        self.run_button.clicked.connect(self.run)
        self.cancel_button.clicked.connect(self.cancel)
        self.scan_list.itemChanged.connect(lambda *_: self.refresh_methods())
        self.reference.currentIndexChanged.connect(lambda *_: self.refresh_methods())
        self.method.currentIndexChanged.connect(self._show_method_help)
        for event in (self.viewer.layers.events.inserted, self.viewer.layers.events.removed):
            event.connect(lambda *_: self.refresh_layers())

    # ------------------------------------------------------------------ inputs

    def refresh_layers(self, suggest: bool = False) -> None:
        """List the 3-D image layers; tick the suggested scans when nothing was chosen yet."""
        checked = set(self.scan_names())
        layers = [layer for layer in image_layers(self.viewer)
                  if layer.metadata.get("isovox_role") not in ("result", "map")]
        scans, ref = _core.suggest_roles(layers)
        if not checked:
            checked = {layer.name for layer in scans}
        reference = self.reference.currentText() or ""
        if reference in ("", NO_REFERENCE) and ref is not None and (suggest or not checked):
            reference = ref.name
        self.scan_list.blockSignals(True)
        self.scan_list.clear()
        for layer in layers:
            item = QListWidgetItem(layer.name)
            item.setFlags(item.flags() | Qt.ItemIsUserCheckable)
            item.setCheckState(Qt.Checked if layer.name in checked else Qt.Unchecked)
            self.scan_list.addItem(item)
        self.scan_list.blockSignals(False)
        self.reference.blockSignals(True)
        self.reference.clear()
        self.reference.addItems([NO_REFERENCE] + [layer.name for layer in layers])
        self.reference.setCurrentText(reference if find_layer(self.viewer, reference) else NO_REFERENCE)
        self.reference.blockSignals(False)
        self.refresh_methods()

    def scan_names(self) -> list[str]:
        return [self.scan_list.item(i).text() for i in range(self.scan_list.count())
                if self.scan_list.item(i).checkState() == Qt.Checked]

    def set_scans(self, names: list[str], reference: Optional[str] = None) -> None:
        """Choose scans (and reference) by layer name, as a user ticking the list would."""
        for i in range(self.scan_list.count()):
            item = self.scan_list.item(i)
            item.setCheckState(Qt.Checked if item.text() in names else Qt.Unchecked)
        self.reference.setCurrentText(reference or NO_REFERENCE)
        self.refresh_methods()

    def refresh_methods(self) -> None:
        """Fill the method list from the registry for the current number of scans."""
        current = self.method.currentData()
        self.method.blockSignals(True)
        self.method.clear()
        with_ref = self.reference.currentText() not in ("", NO_REFERENCE)
        for spec in frontend.methods_for(len(self.scan_names()), with_ref):
            label = spec.name if spec.available() else f"{spec.name} (weights missing)"
            self.method.addItem(label, spec.name)
            self.method.setItemData(self.method.count() - 1, spec.description, Qt.ToolTipRole)
        index = self.method.findData(current)
        self.method.setCurrentIndex(max(index, 0))
        self.method.blockSignals(False)
        self._show_method_help()

    def _show_method_help(self, *_: Any) -> None:
        spec = frontend.method_named(self.method.currentData())
        self.method_help.setText(f"{spec.description} Takes {spec.inputs}." if spec else "")

    def request(self) -> _core.RunRequest:
        """The chosen layers as engine volumes plus the options (raises InputError on a bad choice)."""
        from isovox.errors import InputError

        names = self.scan_names()
        if not 1 <= len(names) <= 3:
            raise InputError("tick 1 to 3 scans")
        scans = [_core.layer_to_volume(find_layer(self.viewer, n)) for n in names]
        ref_layer = find_layer(self.viewer, self.reference.currentText())
        reference = _core.layer_to_volume(ref_layer) if ref_layer is not None else None
        # a reference layer is for comparison only with a method that takes none
        reference = frontend.reference_for_method(self.method.currentData(), reference)
        return _core.RunRequest(
            scans=scans, method=self.method.currentData(), spacing=self.spacing.value() or None,
            scale=self.scale.value() or None, reference=reference, device=self.device.currentText(),
            options=RunOptions(register=self.register.isChecked(), match_intensity=self.match.isChecked(),
                               ensemble=self.ensemble.isChecked(), adapt=self.adapt.isChecked(),
                               slice_profile=self.profile.currentText(), smoothness=self.smoothness.value() or None,
                               consistency=self.consistency.isChecked()),
        )

    # ------------------------------------------------------------------ work

    def _task(self) -> Any:
        return _core.make_task(self._report, lambda: self._cancel_requested)

    def _report(self, fraction: float, message: str) -> None:
        """Called in the worker thread: hand progress to the GUI thread."""
        self._progress.changed.emit(fraction, message)

    def _show_progress(self, fraction: float, message: str) -> None:
        self.progress.setValue(int(1000 * fraction))
        if message:
            self.status.setText(message)

    def _start(self, function: Callable[..., Any], *args: Any, done: Callable[[Any], None],
               label: str) -> Any:
        if self.worker is not None:
            self.status.setText("busy: wait for the current job or cancel it")
            return None
        self._cancel_requested = False
        self.progress.setValue(0)
        self.status.setText(label)
        self._busy(True)
        self.worker = start_worker(function, *args, on_done=done, on_error=self._failed,
                                   on_finished=self._finished)
        return self.worker

    def _busy(self, busy: bool) -> None:
        for button in (self.check_button, self.preview_button, self.run_button):
            button.setEnabled(not busy)
        self.cancel_button.setEnabled(busy)

    def _finished(self) -> None:
        self.worker = None
        self._busy(False)

    def _failed(self, exc: BaseException) -> None:
        from isovox.errors import CancelledError

        self.progress.setValue(0)
        self.status.setText("cancelled; nothing was added" if isinstance(exc, CancelledError) else f"failed: {exc}")
        notify_error(exc)

    def cancel(self) -> None:
        """Ask the running job to stop at its next chunk; it then adds nothing."""
        self._cancel_requested = True
        self.status.setText("cancelling...")

    def _guarded(self, build: Callable[[], Any]) -> Any:
        try:
            return build()
        except Exception as exc:  # noqa: BLE001 - bad choices become a notification
            notify_error(exc)
            self.status.setText(str(exc))
            return None

    def run_preflight(self) -> Any:
        """The engine's pre-flight report for the chosen scans, in the panel."""
        request = self._guarded(self.request)
        if request is None:
            return None

        def show(result: tuple[str, list[str]]) -> None:
            text, warnings = result
            self.report.setPlainText(text)
            self.warnings.setText("\n".join(f"⚠ {w}" for w in warnings) if warnings else "no warnings")
            self.status.setText("pre-flight done")
            self.progress.setValue(1000)

        return self._start(frontend.preflight_text, request.scans, done=show, label="checking...")

    def preview(self) -> Any:
        """Super-resolve a slab around the current slice only."""
        request = self._guarded(self.request)
        if request is None:
            return None
        point, normal = current_point_and_normal(self.viewer)

        def add(output: _core.RunOutput) -> None:
            old = find_layer(self.viewer, output.name)
            if old is not None:
                self.viewer.layers.remove(old)
            add_layer_data(self.viewer, self._result_layer(output))
            self.status.setText(f"preview ready ({output.provenance['seconds']:.1f} s)")

        return self._start(_core.run_preview, request, point, self.slab.value(), normal, self._task(),
                           done=add, label="preview...")

    def run(self) -> Any:
        """Super-resolve the whole volume in a worker; the result appears only when complete."""
        request = self._guarded(self.request)
        if request is None:
            return None

        def add(output: _core.RunOutput) -> None:
            layer = add_layer_data(self.viewer, self._result_layer(output))
            physics = frontend.reconstruction_summary(output.provenance)
            self.status.setText(f"added {layer.name} ({output.provenance['seconds']:.1f} s)"
                                + (f"; {physics}" if physics else ""))
            if self.on_result is not None:
                self.on_result(layer, request)

        return self._start(_core.run_super_resolution, request, self._task(), done=add, label="running...")

    @staticmethod
    def _result_layer(output: _core.RunOutput) -> _core.LayerData:
        data = _core.volume_layer_data(output.volume, output.name)
        data[1]["metadata"]["isovox_role"] = "result"
        return data
