"""Training: rectified-flow pre-training (``FlowPretrainModule``), timestep samplers, EMA, callbacks, and loading
what ``arc-train`` wrote."""
