"""The offline world: a generated instruction suite with gold checkers, and a tiny base model.

Nothing is downloaded. `build_world(recipe)` writes the splits and a locally created
Llama; `gold_score(metadata, response)` says how good any response to any suite prompt is,
which lets every stage report true alignment gains, not just proxy reward. Importing this
package does not import torch or transformers (the reward, UI and data code use
`gold_score` alone).
"""

from alignment.suite.constraints import CONSTRAINTS
from alignment.suite.families import FAMILIES
from alignment.suite.generate import SPLITS
from alignment.suite.gold import GoldResult, gold_score, mean_gold
from alignment.suite.world import World, build_world

__all__ = ["CONSTRAINTS", "FAMILIES", "SPLITS", "GoldResult", "World", "build_world", "gold_score", "mean_gold"]
