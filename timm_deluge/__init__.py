"""DelugeNets for timm: importing this package registers the model family with timm."""
from .models import *

__version__ = '0.1.0'
