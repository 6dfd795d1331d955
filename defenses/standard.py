"""Regular (undefended) training: cross-entropy on clean images. The paper's baseline."""
import torch.nn.functional as F

from advrp2k import TrainingDefense, register_defense


@register_defense("standard")
class StandardTraining(TrainingDefense):
    options = {}  # declared: takes none
    paper_id = "Standard"
    title = "Standard training (no defense)"
    needs_eps = False

    def training_loss(self, model, x, y, generator):
        return F.cross_entropy(model(x), y)
