"""Warm state in and out: routing T steps in chunks gives the same Q as one pass (ROUTING.md section 1).

Two kinds, one per engine family:

- ``recursive``: the filter state of each reach after the last step, ``filter`` [B, N, 3] float64 =
  (Q, U, q) at that step. Engines that run recursions (exact, on schemes with a recursion) use it.
- ``history``: the outflow and runoff of each reach over the last H = L - 1 steps, ``outflow`` and
  ``runoff`` [B, N, H] float64 (oldest first); each reach's inflow history is the sum of its upstream
  reaches' outflow. Engines that convolve with kernels of length L (exact on schemes without a
  recursion, fft, closure) use it; H must cover the kernels, so chunks routed this way use a kernel
  length fixed by the parameters, not by the chunk.

A state is tied to the network (reach count), scheme, dt and batch size it came from; ``check``
refuses any other use with a message saying which differs.
"""
from __future__ import annotations

import dataclasses

from ..errors import InputError

__all__ = ["RoutingState"]


@dataclasses.dataclass(frozen=True)
class RoutingState:
    """The state after routing ``steps`` steps (see the module docstring).

    Attributes
    ----------
    kind : 'recursive' or 'history'.
    scheme : name of the scheme that produced it.
    dt : step, s.
    n_reaches, batch : the shape it applies to.
    steps : steps routed so far (the sum over chunks).
    tensors : 'filter' [B, N, 3] for 'recursive'; 'outflow', 'runoff' [B, N, H] for 'history'.
    kernel_length : L for 'history' (H = L - 1), None otherwise.
    """

    kind: str
    scheme: str
    dt: float
    n_reaches: int
    batch: int
    steps: int
    tensors: dict
    kernel_length: int | None = None

    def to(self, device) -> RoutingState:
        return dataclasses.replace(self, tensors={k: v.to(device) for k, v in self.tensors.items()})

    def check(self, *, kind: str | None, scheme: str, dt: float, n_reaches: int, batch: int) -> None:
        """Raise InputError when this state cannot continue the run described by the arguments."""
        problems = []
        if scheme != self.scheme:
            problems.append(f"scheme '{self.scheme}' (now '{scheme}')")
        if float(dt) != float(self.dt):
            problems.append(f"dt {self.dt:g} s (now {dt:g} s)")
        if n_reaches != self.n_reaches:
            problems.append(f"{self.n_reaches:,} reaches (now {n_reaches:,})")
        if batch != self.batch:
            problems.append(f"batch {self.batch} (now {batch})")
        if kind is not None and kind != self.kind:
            problems.append(f"a {self.kind} state, and this engine needs a {kind} state")
        if problems:
            raise InputError(f"the warm state does not fit this run: it was made with {'; '.join(problems)}.",
                             hint="Continue a run with the same network, scheme, dt, batch and engine that made "
                                  "its state, or start cold (state=None).")

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.tensors.values())
