"""transformers' ResNet: the classifier (flatten, linear) reads the pooled last stage; LoRA goes
into the blocks' convolutions (there is no Linear layer in them)."""

from torch import nn

from hftl.families.base import Family, Split, pooled_image


class ResNet(Family):
    name = "resnet"
    model_types = ("resnet",)
    split = Split(
        "resnet",
        lambda m, b: pooled_image(m, b).flatten(1),
        lambda m, f: m.classifier[1](f),
        linear_head=lambda m: m.classifier[1],
    )

    def split_for(self, model):
        classifier = getattr(model, "classifier", None)
        if isinstance(classifier, nn.Sequential) and isinstance(classifier[-1], nn.Linear):
            return self.split
        return None
