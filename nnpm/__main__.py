from nnpm.cli import main

main()
