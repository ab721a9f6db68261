"""Networks: the configurable MLP, the minibatch-discrimination layer and the G/D builders."""
