"""The model zoo: the lectures' architectures by name (`create("resnet18")`, `list_models()`).

Importing a family module registers its models; add a new family's import here.
"""

from cnnlab.zoo.registry import ModelInfo, count_parameters, create, create_from_spec, list_models, register
# importing a family registers its models, listed in history order
from cnnlab.zoo import seed, lenet, alexnet, vgg, resnet, wideresnet, fastnet  # noqa: F401, I001

__all__ = ["ModelInfo", "count_parameters", "create", "create_from_spec", "list_models", "register"]
