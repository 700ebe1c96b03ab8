"""Closed sets and frozen records shared across the core (statuses, splits, formats, roles)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeVar

from ftapp.errors import ValidationError
from ftapp.text import plural


class ExampleStatus(StrEnum):
    PENDING = "pending"
    ACCEPTED = "accepted"
    REJECTED = "rejected"


class Split(StrEnum):
    TRAIN = "train"
    VALIDATION = "validation"
    TEST = "test"


class SourceFormat(StrEnum):
    MESSAGES = "messages"
    PROMPT_COMPLETION = "prompt_completion"
    ALPACA = "alpaca"
    SHAREGPT = "sharegpt"
    # Preference data (ftapp/data/preference_formats.py): a dataset of kind "preference".
    PREFERENCE = "preference"  # TRL's prompt/chosen/rejected
    IMPLICIT_PREFERENCE = "implicit_preference"  # TRL's implicit prompt, Anthropic HH
    OPENAI_PREFERENCE = "openai_preference"  # OpenAI's preference fine-tuning JSONL
    KTO = "kto"  # TRL's unpaired prompt/completion/label

    @property
    def is_preference(self) -> bool:
        return self in PREFERENCE_FORMATS


PREFERENCE_FORMATS = frozenset({
    SourceFormat.PREFERENCE, SourceFormat.IMPLICIT_PREFERENCE, SourceFormat.OPENAI_PREFERENCE,
    SourceFormat.KTO,
})  # fmt: skip


class DatasetKind(StrEnum):
    SFT = "sft"  # conversations to imitate
    PREFERENCE = "preference"  # pairs (chosen, rejected) or answers labelled good or bad


class OnError(StrEnum):
    SKIP = "skip"
    ABORT = "abort"


class Role(StrEnum):
    """What a user may do. Admins: everything. Reviewers: the Arena and their own progress.
    Visitors (not signed in, Hugging Face sign-in only): the About page."""

    ADMIN = "admin"
    REVIEWER = "reviewer"
    VISITOR = "visitor"


@dataclass(frozen=True)
class RowProblem:
    """One rejected row of an imported file: where it is, why, and the start of its text."""

    location: str  # "line 12" or "row 12" (Parquet has rows, not lines)
    line: int
    reason: str
    raw: str = ""


@dataclass(frozen=True)
class ImportReport:
    dataset: str
    file_name: str
    file_type: str
    source_format: str
    n_rows: int
    n_imported: int
    problems: list[RowProblem] = field(default_factory=list)
    duplicates: list[RowProblem] = field(default_factory=list)
    import_id: int | None = None  # None when nothing was written (abort)

    @property
    def n_rejected(self) -> int:
        return len(self.problems)

    @property
    def n_duplicates(self) -> int:
        return len(self.duplicates)

    def summary(self) -> str:
        text = (
            f"{self.n_imported} of {plural(self.n_rows, 'row')} imported into '{self.dataset}' "
            f"({self.file_type}, {self.source_format})"
        )
        if self.problems:
            text += f"; {self.n_rejected} rejected"
        if self.duplicates:
            text += f"; {plural(self.n_duplicates, 'exact duplicate')} skipped"
        return text


@dataclass(frozen=True)
class Dataset:
    id: int
    name: str
    description: str
    created_at: str
    created_by: str
    split_ratios: tuple[float, float, float] | None = None
    split_seed: int | None = None
    kind: DatasetKind = DatasetKind.SFT


@dataclass(frozen=True)
class Example:
    id: int
    dataset_id: int
    messages: list[dict[str, str]]
    original_messages: list[dict[str, str]]
    raw: Any
    tools: list[Any] | None
    status: ExampleStatus
    split: Split | None
    tags: list[str]
    note: str
    n_tokens: int | None
    source_line: int | None
    source_format: str
    created_at: str
    updated_at: str | None
    updated_by: str | None
    reviewed_at: str | None
    reviewed_by: str | None
    # Preference examples: `messages` is the prompt with the chosen answer; a pair has the
    # rejected answer's turns, an unpaired (KTO) row its label. None in SFT datasets.
    rejected: list[dict[str, str]] | None = None
    label: bool | None = None
    battle_id: int | None = None

    @property
    def is_edited(self) -> bool:
        return self.messages != self.original_messages


@dataclass(frozen=True)
class DatasetVersion:
    id: int
    dataset_id: int
    dataset: str
    version: int
    content_hash: str
    n_examples: int
    n_train: int
    n_validation: int
    n_test: int
    note: str
    created_at: str
    created_by: str

    @property
    def label(self) -> str:
        return f"{self.dataset}@v{self.version}"


E = TypeVar("E", bound=StrEnum)


def parse_choice(enum: type[E], value: str, field: str) -> E:
    """`enum(value)`, or a ValidationError naming the field and the allowed values."""
    try:
        return enum(value)
    except ValueError:
        options = ", ".join(member.value for member in enum)
        raise ValidationError(f"{field} must be one of {options}; got {value!r}") from None


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"  # its worker died; resumed from the last checkpoint

    @property
    def is_finished(self) -> bool:
        return self in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)


@dataclass(frozen=True)
class Job:
    id: int
    name: str
    status: JobStatus
    config: dict[str, Any]
    dataset_version_id: int
    base_model: str
    output_dir: str
    log_path: str
    device: str | None
    worker_id: str | None
    child_pid: int | None
    attempts: int
    is_cancel_requested: bool
    step: int
    total_steps: int | None
    epoch: float | None
    error: str | None
    metrics: dict[str, Any] | None
    created_at: str
    created_by: str
    started_at: str | None
    heartbeat_at: str | None
    finished_at: str | None
    waiting_reason: str | None = None  # a queued job that doesn't fit on the GPU yet: why
    runner: str = "local"  # where it trains: "local" (a child process here) or "ray"
    run_id: str | None = None  # the Ray job's submission id
    run_address: str | None = None  # the Ray cluster's job server
    event_offset: int = 0  # how much of the run's output is recorded as rows


@dataclass(frozen=True)
class ModelVariant:
    """Something that can answer: a final adapter or a checkpoint of a training job."""

    id: int
    name: str
    kind: str  # "adapter" or "checkpoint"
    base_model: str
    path: str
    job_id: int | None
    step: int | None
    eval_loss: float | None
    is_best: bool
    created_at: str


# --- arena ----------------------------------------------------------------------------------


class VoteChoice(StrEnum):
    A = "a"  # the left answer is better
    B = "b"
    TIE = "tie"
    BOTH_BAD = "both_bad"


class SessionStatus(StrEnum):
    GENERATING = "generating"  # answers are being generated; reviewers can't start yet
    OPEN = "open"
    CLOSED = "closed"


class BattleStatus(StrEnum):
    GENERATING = "generating"
    READY = "ready"
    FAILED = "failed"  # a generation failed: it can't be judged


@dataclass(frozen=True)
class Contestant:
    """What answers in a battle: a served model ("base" or a variant), optionally with a
    system prompt (a prompt-engineered contestant)."""

    name: str
    model: str
    system_prompt: str = ""


@dataclass(frozen=True)
class EvalSession:
    id: int
    name: str
    instructions: str
    source: str  # where the prompts came from, for people
    contestants: list[Contestant]
    sampling: dict[str, Any]
    overlap: int  # how many reviewers should judge each battle
    reviewers: list[str] | None  # None: every signed-in user may take part
    status: SessionStatus
    created_at: str
    created_by: str
    opened_at: str | None
    # The ratings are also shown without reviewers below this accuracy on check battles.
    min_gold_accuracy: float | None = None


@dataclass(frozen=True)
class Battle:
    """Two answers to one prompt side by side. The conversations hold what reviewers see:
    the prompt and each side's answers (a contestant's system prompt is not shown)."""

    id: int
    session_id: int | None  # None: a free battle
    prompt_id: int | None
    model_a: str  # the contestant on the left
    model_b: str
    conversation_a: list[dict[str, str]]
    conversation_b: list[dict[str, str]]
    sampling: dict[str, Any]
    latency_a_ms: int | None
    latency_b_ms: int | None
    status: BattleStatus
    error: str | None
    created_at: str
    created_by: str
    gold_choice: str | None = None  # a check: the side known to be better ("a" or "b")
    is_check: bool = False  # a check made from a prompt with known answers, not contestants'

    @property
    def prompt(self) -> list[dict[str, str]]:
        """The messages before the first answer: the same on both sides."""
        first_answer = next(
            (i for i, m in enumerate(self.conversation_a) if m["role"] == "assistant"),
            len(self.conversation_a),
        )
        return self.conversation_a[:first_answer]


@dataclass(frozen=True)
class Vote:
    id: int
    battle_id: int
    reviewer: str
    choice: VoteChoice
    score_a: int | None
    score_b: int | None
    comment: str
    is_early: bool  # cast while an answer was still streaming
    created_at: str


# --- automatic evaluation -------------------------------------------------------------------


class RunStatus(StrEnum):
    GENERATING = "generating"  # answers are being generated
    SCORING = "scoring"  # all answers are in; metrics, checks and the judge are running
    DONE = "done"
    FAILED = "failed"  # no answer could be generated, or scoring broke: `error` says why
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class EvalRun:
    """An automatic evaluation: every contestant answers every held-out example; the answers
    are scored. The first contestant is the baseline the others are compared with."""

    id: int
    name: str
    source: str  # where the examples came from, for people
    dataset_version_id: int | None
    contestants: list[Contestant]
    sampling: dict[str, Any]
    checks: dict[str, Any]  # {"metrics": [...], "regex": ..., "checks": [check specs]}
    judge: dict[str, Any] | None  # {"url", "model"} of an OpenAI-compatible judge, or None
    status: RunStatus
    error: str | None
    created_at: str
    created_by: str
    finished_at: str | None

    @property
    def baseline(self) -> Contestant:
        return self.contestants[0]
