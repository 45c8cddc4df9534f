from sift.cli.main import main

main()
