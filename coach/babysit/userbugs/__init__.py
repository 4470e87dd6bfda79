"""The bugs people make in their own training code, each found by its mechanism.

The lectures' checklist finds what a bad *setting* does (LR, initialization, regularization);
a hand-written loop adds bugs of its own that no setting explains, and that look like the
setting faults from the curves alone (a missing zero_grad reads as "LR too high"). Karpathy's
"A Recipe for Training Neural Networks" (2019) lists the checks a person does by hand; here
each is a mechanism read off the loop while it runs, through hooks that change nothing:

  grads_accumulate       a tensor hook on every parameter records what each backward pass
                         adds; at optimizer.step() the gradient held is that (zero_grad was
                         called, or accumulation on purpose over micro-batches) or that plus
                         the last step's (it was not)
  softmax_before_loss,   the model's outputs are probabilities (rows in [0, 1] summing to 1):
  loss_on_probabilities  with confident outputs a loss that still sits on the floor of a
                         cross-entropy of probabilities, log(C - 1 + e) - 1, got them where it
                         wanted logits; a negative loss got them where it wanted log-probabilities
  training_in_eval_mode  at optimizer.step() the model, with dropout or batch norm in it, is
                         in eval mode (model.eval() before the loop, or no model.train() after
                         a validation pass)
  params_not_updated     parameters with a gradient that no optimizer group holds (an
                         optimizer built on part of the model, or on another model)
  params_frozen          parameters the optimizer was built for have requires_grad off, and
                         they are not a frozen backbone (a prefix of the network)
  grad_clip_too_hard     the gradient at the step is a small fraction of what backward made:
                         clipping, not the LR, sets the step size
  schedule_too_fast      the LR fell to 1/1000 of its peak in the first half of training and
                         stayed there (an epoch schedule stepped every batch)
  data_not_shuffled      whole batches are predicted as one class that changes along the
                         epoch, and the loss swings with the position in it (sorted data)
  batch_dependence       the output of example i has a gradient with respect to input j
                         (a reshape that mixes the batch), in eval mode where batch norm does
                         not couple them: extra passes, run by `coach check` and once at the
                         start of a watch
  labels_misaligned      labels fit the inputs when shifted by a few positions, or are sorted
                         while the inputs are not (`coach check`, which holds the data)
  input_scale_mismatch   inputs given to predict are on another scale than at training
                         (coach.data.preprocess.scale_mismatch: the run keeps its inputs' range)

  hooks     `Inspector`: the evidence, gathered by hooks (cheap, every step; the heavier reads on
            sampled steps), and `loss_graph`, what a loss was computed from
  verdicts  `diagnose_loop`: the findings the evidence supports, a pure function
  passes    the checks that need passes of their own: `batch_dependence`, `label_alignment`
"""
from coach.babysit.userbugs.hooks import Evidence, Inspector, loss_graph
from coach.babysit.userbugs.passes import batch_dependence, label_alignment
from coach.babysit.userbugs.verdicts import ce_floor, diagnose_loop, lag_correlation

__all__ = ["Evidence", "Inspector", "loss_graph", "batch_dependence", "label_alignment", "ce_floor", "diagnose_loop",
           "lag_correlation"]
