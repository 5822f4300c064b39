"""Networks and their files: the teacher, the slimmable split student and its latent codecs, checkpoints,
the loaded model both runtimes share, PCA of split features."""
