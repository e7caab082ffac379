"""`python -m radixgen.runtime.server [flags]`: the same as `radixgen serve [flags]`."""
from radixgen.runtime.server import main

if __name__ == "__main__":
    main()
