"""Training: the loop and its callbacks, optimizers, schedules, checkpoints, EMA and the lr finder.

Typical use (what pipeline.py does):

    cfg = TrainConfig.from_yaml("run.yaml").replace(lr=0.01)
    seed_everything(cfg.seed, cfg.deterministic)
    opt = make_optimizer(cfg.optimizer, model, cfg.lr, cfg.momentum, cfg.nesterov, cfg.weight_decay)
    sched = make_scheduler(cfg.schedule, opt, len(train_batches), cfg.epochs, cfg.warmup_epochs)
    trainer = Trainer(model, nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing), opt, sched,
                      train_batches=train_batches, val_batches=val_batches, device=device,
                      callbacks=[CSVHistory(run / "history.csv"), CheckpointCallback(run / "checkpoint.pt")])
    history = trainer.fit(cfg.epochs)
"""

from cnnlab.train.callbacks import (Callback, CheckpointCallback, CSVHistory, EarlyStopping, ReduceLROnPlateau,
                                    TensorBoard)
from cnnlab.train.checkpoint import load_checkpoint, save_checkpoint
from cnnlab.train.config import TrainConfig
from cnnlab.train.engine import History, Trainer, TrainingInterrupted
from cnnlab.train.optim import make_optimizer
from cnnlab.train.regularize import ModelEMA, init_weights, regularization_loss
from cnnlab.train.reproduce import pick_device, seed_everything
from cnnlab.train.schedules import make_scheduler

__all__ = [
    "CSVHistory", "Callback", "CheckpointCallback", "EarlyStopping", "History", "ModelEMA", "ReduceLROnPlateau",
    "TensorBoard", "TrainConfig", "Trainer", "TrainingInterrupted", "init_weights", "load_checkpoint",
    "make_optimizer", "make_scheduler", "pick_device", "regularization_loss", "save_checkpoint", "seed_everything",
]
