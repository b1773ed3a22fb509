from .delugenet import *
from .baselines import *
