from radixgen.cli import main

main()
