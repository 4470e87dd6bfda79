"""coach inside other libraries' training loops. Each integration imports its library only when
it is itself imported: `coach.integrations.lightning` needs `lightning` (pip install
'coach[lightning]'). (TensorBoard event files are written by coach.train.tensorboard, `train.tensorboard: true`.)"""
