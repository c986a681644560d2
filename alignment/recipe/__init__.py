"""Typed recipes: one YAML file describes a whole run."""

from alignment.recipe.loader import load_recipe, parse_override, recipe_to_dict, save_recipe
from alignment.recipe.schema import Recipe

__all__ = ["Recipe", "load_recipe", "parse_override", "recipe_to_dict", "save_recipe"]
