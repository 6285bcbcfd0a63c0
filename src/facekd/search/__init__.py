"""Differentiable architecture search (DARTS) of PocketNet cells, as PocketNet found its genotype.

``recognition/search.py`` is the command line; docs/nas.md the guide. Modules, one job each:

* ``space``      the search space: the primitives, the edges of a cell, the mixed edge
* ``network``    the cell network (supernet) symbol with its margin-softmax head
* ``supernet``   the supernet bound on N devices: weights, architecture weights, gradients
* ``optim``      SGD with momentum (weights) and Adam (architecture), cosine-annealed lr
* ``architect``  the architecture gradient: first order, or second order (unrolled)
* ``data``       the training set split in two halves, one iterator each
* ``derive``     the genotype of the architecture weights (the file: ``symbols/genotypes.py``)
* ``heatmap``    the PNG of the architecture weights
* ``checkpoint`` the resumable state written each epoch
* ``args``       the command line and its validated settings
* ``searcher``   the epoch loop
"""
