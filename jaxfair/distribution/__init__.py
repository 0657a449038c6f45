"""The distribution method (Rahimi et al.): label W, autoencoder, per-group GMM, draws."""
