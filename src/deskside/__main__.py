from deskside.cli import main

main()
