"""``lp_ft``: linear probe, then fine-tuning (Kumar et al. 2022, "Fine-Tuning can Distort
Pretrained Features and Underperform Out-of-Distribution").

Fine-tuning everything from a random head sends large, noisy gradients from that head into the
backbone during the first steps and distorts the pretrained features, most of all for inputs
unlike the training data. LP-FT first fits the head by a linear probe on the frozen backbone's
features (computed once, cached like feature extraction's; :func:`hftl.feature_cache.probe_head`),
then trains every layer from there, as ``full`` does (with ``layer_decay`` < 1, layer-wise LR
decay). The authors report about +1 point in distribution and +10 out of distribution over full
fine-tuning. The head already fits, so a ``head_lr_multiplier`` above 1 works against the idea.
"""

from hftl.strategies.base import Knob, Strategy
from hftl.strategies.feature_extraction import fitted_probe


class LinearProbeThenFinetune(Strategy):
    name = "lp_ft"
    summary = (
        "fit the new head by a linear probe on the pretrained features, then train everything "
        "from it"
    )
    probes_head = True
    knobs = {"layer_decay": Knob(0.5, 1.0)}  # the head is fitted: no head_lr_multiplier (above)

    def min_depth(self, num_blocks, *, num_trainable_layers=None, stage=0):
        return 0

    def describe(self, training, lr_note):
        probe = fitted_probe(training)
        return (
            "LP-FT: the new head was first fitted by a logistic regression on the pretrained "
            f"backbone's features{' ' + probe if probe else ''}, then every layer was fine-tuned "
            f"from it.{lr_note}"
        )
