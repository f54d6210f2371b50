import HPS
