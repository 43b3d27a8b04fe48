print("cka")
