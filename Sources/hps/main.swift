print("hps")
