"""Training pipeline of the Funnel models: features (the offline twin of the Rust code),
the replay of a simulated stream, training, evaluation, ONNX export and model cards."""
