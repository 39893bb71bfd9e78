import Engine
print(BLAS.kernel)
