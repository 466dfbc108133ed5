"""Diagnostics: the course's "babysitting the learning process" checks, built in.

    report = gs.diagnostics.gradcheck(model, X[:8], y[:8])       # backprop against finite differences
    print(gs.diagnostics.check_initial_loss(model, X, y))        # ~ ln C for C classes?
    print(gs.diagnostics.overfit_small(model, X, y))             # can it drive 20 samples to loss ~0?
    result = gs.diagnostics.lr_find(model, X, y)                 # loss against an exponential lr sweep
    monitor = gs.diagnostics.GradientMonitor()
    history = model.fit(X, y, epochs=10, validation_split=0.2, callbacks=[monitor])
    for finding in gs.diagnostics.diagnose(history, monitor):
        print(finding)

Every check works on a copy of the model (rebuilt from its layers' `get_config()`, with the values
copied): the model given is never modified, and the library's random generator is not advanced.
A `Finding` carries a stable `kind` (see `KINDS`), a `message` a person can act on, with numbers,
and the `evidence` it rests on.

The package holds one module per check (`gradient_check`, `initial_loss`, `overfit`, `lr_finder`),
the monitor (`monitor`), the gradient rule the monitor and `diagnose` share (`gradients`) and the
diagnosis rules (`rules`), each with its own thresholds; everything public is re-exported here.
None of them imports `gradstep.callbacks` (the monitor's base class lives in `gradstep._callback`).
"""
from __future__ import annotations

from .findings import KINDS, Finding
from .gradient_check import GRADCHECK_TOL, GradcheckReport, gradcheck  # noqa: F401 (thresholds re-exported)
from .gradients import EXPLODING_GROWTH, EXPLODING_NORM, VANISHING_ABS, VANISHING_RATIO  # noqa: F401
from .initial_loss import (  # noqa: F401
                           INITIAL_BATCH_HIGH,
                           INITIAL_HIGH,
                           INITIAL_LOW,
                           MSE_HIGH,
                           MSE_OFFSET,
                           MSE_UNCENTRED,
                           check_initial_loss,
)
from .lr_finder import LR_FIND_DESCENT, LR_FIND_RISE, LRFindResult, lr_find  # noqa: F401
from .monitor import GradientMonitor
from .overfit import overfit_small
from .rules import (  # noqa: F401
                           DEAD_FRACTION,
                           FLAT_DECREASE,
                           OVERFIT_GAP,
                           OVERFIT_RISE,
                           SATURATED_FRACTION,
                           SLOW_DECREASE,
                           TINY_UPDATE_RATIO,
                           diagnose,
)

__all__ = ["KINDS", "Finding", "GradcheckReport", "LRFindResult", "GradientMonitor", "gradcheck",
           "check_initial_loss", "overfit_small", "lr_find", "diagnose"]
