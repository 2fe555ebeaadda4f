"""Every data source builder, registered by importing this module (what `registry.build_source` does).

    from jaxprompt.data import registry
    source = registry.build_source("dtd", root="/data")                       # CoOp datasets, ImageNet variants
    source = registry.build_source("office_home", root="/data/OfficeHome", domain="Art")
    source = registry.build_source("mini_domainnet", root="/data/domainnet", domain="sketch")
    source = registry.build_source("tfds", dataset="dtd", data_dir="~/tensorflow_datasets")
    source = registry.build_source("image_folder", root="/data/mine")         # <root>/<split>/<class>/*
"""

from jaxprompt.data import coop_datasets, domains, folder, tfds_source  # noqa: F401  (import registers builders)
from jaxprompt.data.files import read_image_file  # noqa: F401
from jaxprompt.data.registry import build_source, known_sources  # noqa: F401
