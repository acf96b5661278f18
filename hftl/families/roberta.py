"""RoBERTa-style encoders, whose classification head reads token 0 of the sequence itself
(RoBERTa, XLM-R, CamemBERT, ELECTRA, MPNet). MPNet's relative-attention bias is used by every
block but registered after them: depth 0."""

from hftl.families.base import Family, Split, first_token


class Roberta(Family):
    name = "roberta"
    model_types = ("roberta", "xlm-roberta", "camembert", "electra", "mpnet")
    split = Split("roberta", first_token, lambda m, f: m.classifier(f[:, None]))
    shared_across_blocks = (r"(^|\.)encoder\.relative_attention_bias\.",)  # MPNet
    lora_targets = ("query", "value")  # MPNet names them q / v: every Linear layer instead
