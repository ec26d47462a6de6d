"""translate: a small encoder-decoder Transformer translating numbers between digits and words."""

from .workload import TranslatePostLnWorkload, TranslateWorkload

WORKLOADS = {"translate": TranslateWorkload, "translate_post_ln": TranslatePostLnWorkload}
