"""A model trained outside advrp2k, evaluated as given: ``advrp2k eval --model FILE.py:FACTORY``
(``--weights``), ``--arch NAME --weights FILE``, or ``advrp2k.benchmark(model)``. advrp2k trains
nothing for it and does not know how it was trained, so its entries say ``external``."""
from advrp2k import Defense, register_defense


@register_defense("external")
class ExternalModel(Defense):
    options = {}  # declared: takes none (the model's name and weights identify it)
    paper_id = "External"
    title = "A model trained outside advrp2k (evaluated as given)"
    needs_eps = False
    trains = False  # only evaluates given models: 'train --defense external' is refused
