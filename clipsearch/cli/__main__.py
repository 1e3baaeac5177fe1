from clipsearch.cli.group import main

main()
