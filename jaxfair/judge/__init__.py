"""The judge of a face: attribute schemas and targets, preprocessing, crops, the classifier,
and the render-and-judge step (latents -> images -> probabilities)."""
