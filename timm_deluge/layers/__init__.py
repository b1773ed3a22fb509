from .cross_layer import CrossLayerDepthwiseConv, CrossLayerNorm, fold_batchnorm, weighted_sum
