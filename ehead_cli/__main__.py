from ehead_cli.cli import main

main()
