"""The default step-size schedule of :func:`vi_toolkit.fit_vi`, which is also its stopping rule.

The step size stays at ``lr`` while the fit improves. The fit has stopped improving when the trend of the
losses over the last four windows of ``window`` steps is no drop (the fitted drop is below two standard errors,
or below ``rtol`` relative) *and* a sharper test agrees (``still_improving``; :func:`vi_toolkit.svi.step`
passes one that compares the ELBO at the parameters of a window ago and now on the same guide draws, which sees
a slow steady gain that the noise of single-draw losses hides). Then, or when only ``cooldown`` steps are left,
the step size decays geometrically to ``lr * final_lr`` over the cooldown, and the fit stops at its end. The fit returned is thus settled at a
small step size, not a snapshot of a noisy constant-step iterate; ``steps`` is always the upper bound.

With a time budget (``max_seconds``) the same holds in time: when only the ``cooldown`` fraction of the budget
is left, the decay starts over as many steps as fit in the time left at the pace so far, and the fit stops
when the budget is spent, whichever of steps and seconds runs out first.
"""

import math
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class Schedule:
    """Settings of Adam, its step-size schedule and the stopping rule (see the module docstring).

    window: steps per averaging window (None: ``max(25, steps // 20)``).
    cooldown: length of the final decay, as a fraction of ``steps``.
    final_lr: step size at the end of the decay, as a fraction of ``lr``.
    rtol: a relative drop in the windowed mean loss below this counts as no improvement.
    early_stop: start the decay when the loss stops improving (False: only at ``steps - cooldown``).
    decay: False keeps the step size constant throughout (plain Adam; no early stop).
    betas: Adam's moment decay rates. The default 0.99 (not torch's 0.999) lets the second moment forget the
        large gradients of the first steps within ~100 steps; with 0.999 a fit that must travel far (a prior at
        0, a posterior at 8) crawls for ~1000 steps on a step size shrunk by those early gradients.
    """

    window: int = None
    cooldown: float = 0.2
    final_lr: float = 0.01
    rtol: float = 1e-4
    early_stop: bool = True
    decay: bool = True
    betas: tuple = (0.9, 0.99)

    def __post_init__(self):
        from .errors import ConfigError

        if not 0.0 < self.cooldown < 1.0:
            raise ConfigError(f"Schedule.cooldown must lie in (0, 1), got {self.cooldown}")
        if not 0.0 < self.final_lr <= 1.0:
            raise ConfigError(f"Schedule.final_lr must lie in (0, 1], got {self.final_lr}")
        if self.window is not None and self.window < 2:
            raise ConfigError(f"Schedule.window must be at least 2 steps, got {self.window}")


CONSTANT = Schedule(decay=False)
TREND_WINDOWS = 4  # windows of losses whose trend decides whether the fit still improves


class ScheduleState:
    """Runs a :class:`Schedule` over a fit of at most ``steps`` steps: step-size factor and stop signal."""

    def __init__(self, schedule, steps, max_seconds=None):
        self.schedule = schedule
        self.steps = steps
        self.max_seconds = max_seconds
        self.window = schedule.window or max(25, steps // 20)
        self.cooldown = max(1, int(round(schedule.cooldown * steps)))
        self.decay_start = None  # step at which the decay began

    def factor(self, step):
        """Multiplier of ``lr`` for step ``step`` (0-based): 1 before the decay, then geometric."""
        if not self.schedule.decay or self.decay_start is None:
            return 1.0
        progress = min(1.0, (step - self.decay_start) / self.cooldown)
        return self.schedule.final_lr**progress

    def at_check(self, step):
        """Whether step ``step`` (0-based) ends a window at which the schedule may start the decay early."""
        done = step + 1
        return self.schedule.decay and self.schedule.early_stop and self.decay_start is None and done % self.window == 0

    def update(self, step, losses, seconds=0.0, still_improving=None):
        """Call after step ``step`` with all losses so far and the seconds spent; True when the fit should stop.
        ``still_improving``: None, or a function called (only) when the losses have levelled off at a window's
        end, returning True if the fit still improves all the same (the decay then waits)."""
        done = step + 1
        budget = self.max_seconds
        if done >= self.steps or (budget is not None and seconds >= budget):
            return True
        if not self.schedule.decay:
            return False
        if self.decay_start is None:
            if budget is not None and seconds >= (1 - self.schedule.cooldown) * budget:
                left = int((budget - seconds) * done / max(seconds, 1e-9))  # steps that fit in the time left
                self.cooldown = max(1, min(self.cooldown, left))
                self.decay_start = done
            elif done >= self.steps - self.cooldown or (
                self.schedule.early_stop and done % self.window == 0 and self._plateau(losses)
                and not (still_improving is not None and still_improving())
            ):
                self.decay_start = done
            return False
        return done >= self.decay_start + self.cooldown

    def _plateau(self, losses):
        """Whether the losses have levelled off: the least-squares slope of the last ``TREND_WINDOWS`` windows
        of losses (or all, from two windows on), times their span, is a drop below two standard errors or below
        ``rtol`` of the mean loss. A slope over several windows sees a steady gain that the difference of two
        window means (noise sqrt(2 / window) of a loss's) misses: its noise is sqrt(12 / span)."""
        if len(losses) < 2 * self.window:
            return False
        recent = np.asarray(losses[-TREND_WINDOWS * self.window :], dtype=float)
        span = len(recent)
        t = np.arange(span) - (span - 1) / 2.0
        slope = float(t @ (recent - recent.mean()) / (t @ t))
        residual = recent - recent.mean() - slope * t
        stderr = math.sqrt(float(residual @ residual) / (span - 2) / float(t @ t))
        drop = -slope * span
        return drop < max(2.0 * stderr * span, self.schedule.rtol * abs(recent.mean()))

    def state_dict(self):
        return {"decay_start": self.decay_start, "cooldown": self.cooldown, "schedule": asdict(self.schedule),
                "steps": self.steps}

    def load_state_dict(self, state):
        self.decay_start = state["decay_start"]
        self.cooldown = state["cooldown"]
