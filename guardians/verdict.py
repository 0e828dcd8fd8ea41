"""What a guardian says about a piece of code."""
import dataclasses
import logging

log = logging.getLogger("guardians")


@dataclasses.dataclass(frozen=True)
class Reason:
    rule: str
    line: int | None
    message: str

    def __str__(self):
        where = f"line {self.line}: " if self.line else ""
        return f"{where}{self.message} [{self.rule}]"


class GuardianRejection(ValueError):
    """Raised by ``Verdict.raise_if_rejected``; carries every reason."""

    def __init__(self, verdict):
        self.verdict = verdict
        super().__init__("the guardians rejected this code:\n  "
                         + "\n  ".join(str(r) for r in verdict.reasons))


@dataclasses.dataclass
class Verdict:
    source: str
    reasons: list = dataclasses.field(default_factory=list)
    name: str | None = None
    function: str | None = None     # name of the def found in the source
    tree: object = dataclasses.field(default=None, repr=False)  # rewritten AST, when accepted

    @property
    def accepted(self):
        return not self.reasons

    def raise_if_rejected(self):
        if self.reasons:
            raise GuardianRejection(self)

    def as_dict(self):
        return {"accepted": self.accepted, "name": self.name,
                "reasons": [dataclasses.asdict(r) for r in self.reasons]}

    def log(self):
        if self.accepted:
            log.info("guardians accepted method %s", self.name or self.function)
        else:
            log.warning("guardians rejected method %s: %s", self.name or self.function,
                        "; ".join(str(r) for r in self.reasons),
                        extra={"verdict": self.as_dict()})
        return self
