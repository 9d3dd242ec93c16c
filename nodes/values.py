"""The immutable values that travel between the pack's nodes (no ComfyUI import).

ComfyUI caches node outputs and may hand the same object to several downstream nodes, so none of
these is ever changed after creation: a node that "adds" something returns a new value.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cav_core.adapter_file import AdapterFile, TokenEmbeddings
from cav_core.adapters import LoraWeights, check_weight
from cav_core.base_model import check_same_base as engine_check_same_base
from cav_core.errors import CavError
from cav_core.lora_schedule import WHOLE_RUN, LoraSchedule
from cav_core.motion_preview import MotionPreview
from cav_core.sampling import Appearance
from cav_core.absorber_training import Absorber
from cav_core.settings import AbsorberSettings


@dataclass(frozen=True, eq=False)
class LoadedBase:
    """A loaded text-to-video base and the ComfyUI ModelPatcher that manages its device."""

    base: Any  # cav_core.base_model.BaseModel
    patcher: Any  # comfy.model_patcher.ModelPatcher wrapping unet / vae / text_encoder
    choice: str  # what the user picked in the loader

    @property
    def name(self) -> str:
        return self.base.name

    @property
    def fingerprint(self) -> str:
        return self.base.fingerprint


def check_same_base(what: str, base_name: str, base_fingerprint: str, loaded: LoadedBase) -> None:
    """Refuse an adapter made on another base architecture, naming both bases."""
    engine_check_same_base(what, base_name, base_fingerprint, loaded.base)


@dataclass(frozen=True, eq=False)
class TrainedAbsorber:
    """Stage-1 result: the appearance absorber and the base it belongs to."""

    absorber: Absorber
    base_name: str
    base_fingerprint: str
    settings: AbsorberSettings | None = None  # how it was trained, for the adapter file's record

    @property
    def kind(self) -> str:
        parts = [p for p, v in (("slora", self.absorber.spatial), ("ti", self.absorber.textual_inversion)) if v]
        return "dual" if len(parts) == 2 else (parts[0] if parts else "none")


@dataclass(frozen=True, eq=False)
class MotionLora:
    """A motion LoRA (T-LoRA), as trained or read from a file.

    ``adapter`` keeps the absorber it was trained with apart from the motion (spatial LoRA and
    textual inversion under their own keys), exactly as the adapter file stores it; sampling only
    ever takes ``adapter.temporal``. ``preview`` is what saving it writes beside the file: made by
    training or a merge, or the file's own preview when it was read from one.
    """

    name: str
    adapter: AdapterFile
    losses: dict = field(default_factory=dict)
    preview: MotionPreview | None = None

    def __post_init__(self):
        if self.adapter.temporal is None:
            raise CavError(f"'{self.name}' holds no motion (temporal) LoRA, only "
                           f"{', '.join(self.adapter.kinds) or 'nothing'}; pick a motion LoRA file")

    @property
    def temporal(self) -> LoraWeights:
        return self.adapter.temporal

    def summary(self) -> dict:
        out = self.adapter.describe()
        for role in ("temporal", "spatial"):
            if role in out:
                out[role] = {k: v for k, v in out[role].items() if k != "targets"}
        return {"name": self.name, **out}


@dataclass(frozen=True, eq=False)
class StackEntry:
    name: str
    lora: LoraWeights
    strength: float
    base_name: str
    base_fingerprint: str
    adapter: AdapterFile | None = None  # the whole file, for merging (it records its sources)
    preview: MotionPreview | None = None  # shown in a merged file's preview
    schedule: LoraSchedule = WHOLE_RUN  # when, during the denoising run, it acts

    @property
    def presence(self) -> float:
        """Its |strength| averaged over the whole run: what its share of the mix is measured by."""
        schedule = self.schedule
        a = abs(self.strength)
        if schedule.end_strength is None:
            return a * (schedule.end - schedule.start)
        b = abs(schedule.end_strength)
        same_sign = self.strength * schedule.end_strength >= 0
        mean = (a + b) / 2 if same_sign else (a * a + b * b) / (2 * (a + b))  # |linear| crossing zero
        return mean * (schedule.end - schedule.start)


@dataclass(frozen=True, eq=False)
class MotionLoraStack:
    """Weighted motion LoRAs to add up at sampling; each loader returns a NEW, longer stack."""

    entries: tuple[StackEntry, ...] = ()

    def plus(self, motion: MotionLora, strength: float, schedule: LoraSchedule = WHOLE_RUN) -> MotionLoraStack:
        what = f"strength of '{motion.name}'"
        entry = StackEntry(motion.name, motion.temporal, check_weight(strength, what),
                           motion.adapter.base_name, motion.adapter.base_fingerprint, motion.adapter, motion.preview,
                           schedule.check(f"schedule of '{motion.name}'"))
        return MotionLoraStack(self.entries + (entry,))

    @property
    def has_schedules(self) -> bool:
        return any(not e.schedule.is_whole_run for e in self.entries)

    def weighted(self) -> list[tuple[LoraWeights, float, LoraSchedule]]:
        """(LoRA, strength, schedule) triples for the engine; LoRAs that are zero all along are left
        out (they add nothing)."""
        return [(e.lora, e.strength, e.schedule) for e in self.entries
                if e.strength != 0 or (e.schedule.end_strength or 0) != 0]

    def check_fits(self, loaded: LoadedBase) -> None:
        for e in self.entries:
            check_same_base(f"motion LoRA '{e.name}'", e.base_name, e.base_fingerprint, loaded)

    def mix(self) -> list[dict]:
        """Each entry's name, strength, schedule and share of the combined motion (by its |strength|
        averaged over the whole run, so a LoRA acting on half the run counts half)."""
        total = sum(e.presence for e in self.entries)
        return [{"name": e.name, "strength": e.strength, "start": e.schedule.start, "end": e.schedule.end,
                 "end_strength": e.schedule.end_strength,
                 "share": e.presence / total if total else 0.0} for e in self.entries]


@dataclass(frozen=True, eq=False)
class TrainingClips:
    """More clips of one motion, each with its caption; each Add Training Clip returns a NEW, longer value."""

    clips: tuple[tuple[Any, str], ...] = ()  # (uint8 frames [F, H, W, 3], caption)

    def plus(self, frames, caption: str) -> TrainingClips:
        if not caption.strip():
            raise CavError(f"training clip {len(self.clips) + 1} has no caption; describe what it shows")
        return TrainingClips(self.clips + ((frames, caption.strip()),))


@dataclass(frozen=True, eq=False)
class AppearanceChoice:
    """An S-LoRA and/or textual-inversion tokens to apply at sampling, and their base."""

    spatial: LoraWeights | None
    textual_inversion: TokenEmbeddings | None
    strength: float
    base_name: str
    base_fingerprint: str
    source: str

    def __post_init__(self):
        check_weight(self.strength, f"appearance strength of {self.source}")
        if self.spatial is None and self.textual_inversion is None:
            raise CavError(f"{self.source} has no S-LoRA and no textual inversion to apply; train the "
                           "absorber with kind slora, ti or dual, or switch on the part it has")

    @property
    def tokens(self) -> tuple[str, ...]:
        return self.textual_inversion.tokens if self.textual_inversion else ()

    def to_engine(self) -> Appearance:
        return Appearance(self.spatial, self.textual_inversion, self.strength)


def choose_appearance(absorber: TrainedAbsorber | None, motion_lora: MotionLora | None, use_slora: bool,
                      use_textual_inversion: bool, strength: float) -> AppearanceChoice:
    """The parts of an absorber (or of the absorber stored with a motion LoRA) to apply."""
    if absorber is not None and motion_lora is not None:
        raise CavError("connect either an absorber or a motion LoRA file to Apply Appearance, not both")
    if absorber is not None:
        spatial, ti = absorber.absorber.spatial, absorber.absorber.textual_inversion
        base_name, fingerprint, source = absorber.base_name, absorber.base_fingerprint, "the absorber"
    elif motion_lora is not None:
        a = motion_lora.adapter
        spatial, ti = a.spatial, a.textual_inversion
        base_name, fingerprint, source = a.base_name, a.base_fingerprint, f"motion LoRA '{motion_lora.name}'"
    else:
        raise CavError("connect an absorber (Train Appearance Absorber) or a motion LoRA whose file "
                       "carries an absorber (Load Motion LoRA)")
    return AppearanceChoice(spatial=spatial if use_slora else None,
                            textual_inversion=ti if use_textual_inversion else None,
                            strength=strength, base_name=base_name, base_fingerprint=fingerprint, source=source)
