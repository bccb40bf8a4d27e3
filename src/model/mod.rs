//! Features, training (gradient-boosted trees, logistic baseline), hyperparameter search, metrics and the model file.
